"""Texts, sentence-transformers embeddings (cached by text hash) and FAISS indexes. Never imports Prefect."""
