"""Provider adapters: one module per wire format, translating to ``gateway.messages`` and back."""
