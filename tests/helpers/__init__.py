"""What the tests share: small networks, reference implementations, data makers (imported as
`helpers.*`; fixtures stay in conftest.py)."""
