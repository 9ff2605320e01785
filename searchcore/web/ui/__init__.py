"""The Gradio UI: one module per tab, the layout that assembles them, and the formatting they share."""
