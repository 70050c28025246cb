"""nfaas: serverless network functions and IoT services on edge nodes."""

__version__ = "0.1.0"
