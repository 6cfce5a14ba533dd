"""orderwatch.service"""
