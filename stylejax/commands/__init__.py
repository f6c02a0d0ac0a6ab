"""stylejax.commands"""
