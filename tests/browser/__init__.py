"""Real-browser end-to-end tests (headless Chromium via Playwright); see conftest.py."""
