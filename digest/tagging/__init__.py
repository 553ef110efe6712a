"""Topic tagging and the text analyser it shares with interest matching."""
