"""neurofuzz.corpus"""
