"""What backups cost: where each stored version sits, and a projection of a plan's monthly bill."""
