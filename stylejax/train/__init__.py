"""stylejax.train"""
