"""Bring-your-own-data adapters: image folders, tables, Hugging Face datasets and loader plugins."""
