"""What a person or a program reads: the text report, the JSON document and its schema."""
