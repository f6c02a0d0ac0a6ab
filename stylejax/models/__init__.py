"""stylejax.models"""
