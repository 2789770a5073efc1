"""Answering queries: query terms and their composition, the searcher over a library's parts,
duplicates and the 2-D map."""
