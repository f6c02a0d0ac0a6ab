"""stylejax.pipeline"""
