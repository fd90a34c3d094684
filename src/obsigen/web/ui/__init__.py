"""The browser UI: server-rendered page shells plus small static JS modules over the JSON APIs."""
