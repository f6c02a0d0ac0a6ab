"""stylejax.data"""
