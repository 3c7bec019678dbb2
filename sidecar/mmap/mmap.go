// Package mmap maps model files read-only, so a multi-gigabyte model costs
// page-table entries rather than a copy in memory. Both model readers use it.
package mmap
