"""The local cloud for development and demos: the emulators, the sample scene, the web page's
server. Never deployed."""
