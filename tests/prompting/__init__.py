"""From the person's words to a prompt spec: the interview and the spec builder."""
