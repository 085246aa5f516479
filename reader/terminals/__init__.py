"""Host applications: the PSAM helper, the SSSE terminal (LD/T 32 P7), the payment terminal
and issuer host, the named flows, the fleet load generator and the demo."""
