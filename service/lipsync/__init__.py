"""The lip-sync engine: Wav2Lip mel windows, face crops, batched inference and paste-back."""
