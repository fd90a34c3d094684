"""Secret backends beyond env/file (AWS Secrets Manager) and rotation ages (docs/secrets.md)."""
