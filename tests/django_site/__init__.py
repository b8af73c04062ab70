"""A minimal Django project for tests/integration/test_django.py: the README's view, its URL."""
