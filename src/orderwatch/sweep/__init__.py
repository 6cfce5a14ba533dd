"""orderwatch.sweep"""
