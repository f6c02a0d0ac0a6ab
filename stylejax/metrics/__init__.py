"""stylejax.metrics"""
