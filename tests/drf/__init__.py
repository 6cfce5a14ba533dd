"""An Ace Data Cloud orders API built on the real frameworks (Django REST framework, django-filter), for tests.

``serve.py`` runs it as a real HTTP server in its own process; ``tests/test_drf_server.py`` polls it and changes
its orders through the same SQLite database.
"""
