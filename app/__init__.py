"""Decision service: HTTP API, policy serving, personas, flags."""
