"""stylejax.methods"""
