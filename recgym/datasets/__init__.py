"""Dataset loaders: MovieLens, S3-Rec Amazon, Steam catalogue, generic CSV/Parquet."""
