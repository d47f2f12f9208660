"""The chat and the studio flows, the tool-calling agent and the generate_image tool."""
