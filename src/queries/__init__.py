"""The read side: MongoDB read models and the query HTTP app."""
