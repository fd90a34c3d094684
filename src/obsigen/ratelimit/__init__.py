"""Rate limits and inference token budgets, shared by every server process through Redis.

Kept import-light on purpose: :mod:`obsigen.config` validates rates with :mod:`.rates`, so this
package must not pull in the web layer or the settings module at import time.
"""
