/* placeholder: progress bar and plain progress lines */
