package publisher

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// WriteText writes the summary for a person reading a terminal.
func (s Summary) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "seed\t%d\n", s.Seed)
	fmt.Fprintf(tw, "duration\t%s\n", s.Duration.Round(time.Millisecond))
	fmt.Fprintf(tw, "requests\t%d\n", s.Requests)
	fmt.Fprintf(tw, "events sent\t%d (%.1f/s)\n", s.EventsSent, s.EventsPerSecond)
	fmt.Fprintf(tw, "duplicates sent\t%d\n", s.Duplicates)
	fmt.Fprintf(tw, "corrupted sent\t%d\n", s.Corrupted)
	fmt.Fprintf(tw, "accepted\t%d\n", s.Accepted)
	fmt.Fprintf(tw, "rejected\t%d\n", s.Rejected)
	fmt.Fprintf(tw, "network errors\t%d\n", s.NetworkErrors)
	codes := make([]int, 0, len(s.StatusCodes))
	for c := range s.StatusCodes {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	for _, c := range codes {
		fmt.Fprintf(tw, "status %d\t%d\n", c, s.StatusCodes[c])
	}
	_ = tw.Flush()
}
