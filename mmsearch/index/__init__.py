"""Vector indexes derived from the database: FAISS indexes, their IVF files, and keeping them in
step with the database's generations. Never the truth: any of them can be rebuilt from storage."""
