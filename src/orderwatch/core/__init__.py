"""orderwatch.core"""
