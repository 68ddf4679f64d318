"""AS2 (RFC 4130): receive signed / encrypted / compressed flows over HTTP and answer with MDNs.

Built on `pyas2lib`. Modules: `oscrypto_fix` (loads pyas2lib's crypto backend on OpenSSL ≥ 3.0.10),
`keys` (key pairs and self-signed certificates), `receiver` (parsing, duplicate check, intake, MDN),
`service` (the HTTP listener, a daemon service), `sink` (async MDNs and acknowledgements sent by AS2).
"""
