"""pool tests (issue 3): a package, so module names never clash with other test folders."""
