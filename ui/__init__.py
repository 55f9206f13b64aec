"""The app's views: what the Memory and Vocabulary tabs and the chat's memory notes show."""
