"""The real app (`egaki run`) in a subprocess, driven over Chainlit's socket.io."""
