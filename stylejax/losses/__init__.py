"""stylejax.losses"""
