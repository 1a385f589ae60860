"""The Google Cloud adapters: storage, Pub/Sub, Firestore job documents, Cloud Run launches,
Firebase identity, and the clients made from the settings.

Imports only the shared bottom (errors, settings, logs); the render core does not know them.
"""
