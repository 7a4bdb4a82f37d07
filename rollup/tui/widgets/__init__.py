"""The dashboard's widgets, one per file; each renders from the view model only."""
