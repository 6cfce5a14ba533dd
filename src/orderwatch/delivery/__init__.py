"""orderwatch.delivery"""
