"""The runtime vocabulary: phrases embedded once per change, their checks, concurrent writers."""
