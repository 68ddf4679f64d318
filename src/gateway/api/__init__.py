"""The partner-facing HTTP surface: AFNOR Flow Service 1.3.0 (`/v1`), tokens and webhooks (issue 21)."""
