"""The domain: tables, pure rules, errors and events. Imports nothing from services, adapters or api."""
