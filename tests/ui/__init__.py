"""The UI edge: chat history persistence behind Chainlit."""
