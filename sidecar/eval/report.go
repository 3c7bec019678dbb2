package eval

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fastgen/fastgen/sidecar/fastgen"
)

// column is one metric of a Point as the table and CSV show it.
type column struct {
	name, head string // CSV name, Markdown header
	get        func(p Point) (float64, bool)
	format     string
}

func always(f func(p Point) float64) func(p Point) (float64, bool) {
	return func(p Point) (float64, bool) { return f(p), true }
}

func optional(f func(p Point) *float64) func(p Point) (float64, bool) {
	return func(p Point) (float64, bool) {
		if v := f(p); v != nil {
			return *v, true
		}
		return 0, false
	}
}

// columns are every metric, in the order the spec lists them.
var columns = []column{
	{"pruned_ratio", "pruned (end)", always(func(p Point) float64 { return p.PrunedRatio }), "%.3f"},
	{"pruned_ratio_avg", "pruned (avg)", always(func(p Point) float64 { return p.PrunedRatioAvg }), "%.3f"},
	{"kv_bytes_ratio", "KV bytes / full", always(func(p Point) float64 { return p.KVBytesRatio }), "%.3f"},
	{"attn_loss", "attn loss", always(func(p Point) float64 { return p.AttnLoss }), "%.4f"},
	{"attn_loss_p95", "attn loss p95", always(func(p Point) float64 { return p.AttnLossP95 }), "%.4f"},
	{"dppl_pct", "ΔPPL %", always(func(p Point) float64 { return p.DPPLPct }), "%.2f"},
	{"kl", "KL", always(func(p Point) float64 { return p.KL }), "%.4f"},
	{"top1", "top-1", always(func(p Point) float64 { return p.Top1 }), "%.3f"},
	{"first_divergence", "first div.", always(func(p Point) float64 { return p.FirstDivergence }), "%.1f"},
	{"exact_match", "exact match", always(func(p Point) float64 { return p.ExactMatch }), "%.3f"},
	{"rouge_l", "ROUGE-L", always(func(p Point) float64 { return p.RougeL }), "%.3f"},
	{"profile_share", "profile share", optional(func(p Point) *float64 { return p.ProfileShare }), "%.4f"},
	{"decode_tok_s", "tok/s", always(func(p Point) float64 { return p.DecodeTokS }), "%.0f"},
	{"full_decode_tok_s", "full tok/s", always(func(p Point) float64 { return p.FullDecodeTokS }), "%.0f"},
	{"match_err", "match err", optional(func(p Point) *float64 { return p.MatchErr }), "%.4f"},
}

func cell(c column, p Point) string {
	v, ok := c.get(p)
	if !ok || math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf(c.format, v)
}

// WriteMarkdown writes one table of every metric per method and point, then
// the policy shares per layer (the paper's Fig. 3 as numbers).
func WriteMarkdown(w io.Writer, r *Result) error {
	var b strings.Builder
	b.WriteString("| method | T |")
	for _, c := range columns {
		b.WriteString(" " + c.head + " |")
	}
	b.WriteString("\n|---|---:|")
	b.WriteString(strings.Repeat("---:|", len(columns)))
	b.WriteString("\n")
	for _, p := range r.Points {
		fmt.Fprintf(&b, "| %s | %.2f |", p.Method, p.Threshold)
		for _, c := range columns {
			b.WriteString(" " + cell(c, p) + " |")
		}
		b.WriteString("\n")
	}
	if len(r.Policies) > 0 {
		b.WriteString("\nShare of FastGen's heads on each policy, per layer:\n\n| T | layer |")
		for _, n := range fastgen.PolicyNames {
			b.WriteString(" " + n + " |")
		}
		b.WriteString("\n|---:|---:|" + strings.Repeat("---:|", len(fastgen.PolicyNames)) + "\n")
		for _, ps := range r.Policies {
			fmt.Fprintf(&b, "| %.2f | %d |", ps.Threshold, ps.Layer)
			for _, s := range ps.Share {
				fmt.Fprintf(&b, " %.2f |", s)
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteCSV writes one row per method and point with every metric; optional
// metrics a method lacks are empty.
func WriteCSV(w io.Writer, r *Result) error {
	cw := csv.NewWriter(w)
	head := []string{"method", "threshold", "prompts", "tokens"}
	for _, c := range columns {
		head = append(head, c.name)
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	for _, p := range r.Points {
		row := []string{p.Method, strconv.FormatFloat(p.Threshold, 'f', -1, 64), strconv.Itoa(p.Prompts), strconv.Itoa(p.Tokens)}
		for _, c := range columns {
			v, ok := c.get(p)
			if !ok || math.IsNaN(v) {
				row = append(row, "")
				continue
			}
			row = append(row, strconv.FormatFloat(v, 'g', 6, 64))
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WritePolicyCSV writes the policy shares per threshold and layer.
func WritePolicyCSV(w io.Writer, r *Result) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(append([]string{"threshold", "layer"}, fastgen.PolicyNames...)); err != nil {
		return err
	}
	for _, ps := range r.Policies {
		row := []string{strconv.FormatFloat(ps.Threshold, 'f', -1, 64), strconv.Itoa(ps.Layer)}
		for _, s := range ps.Share {
			row = append(row, strconv.FormatFloat(s, 'g', 6, 64))
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes the result as one indented JSON object. NaN (a metric with
// nothing to average) has no JSON form, so it is written as 0.
func WriteJSON(w io.Writer, r *Result) error {
	out := *r
	out.Points = make([]Point, len(r.Points))
	for i, p := range r.Points {
		for _, f := range []*float64{&p.PrunedRatio, &p.PrunedRatioAvg, &p.KVBytesRatio, &p.DPPLPct, &p.KL, &p.Top1,
			&p.FirstDivergence, &p.ExactMatch, &p.RougeL, &p.AttnLoss, &p.AttnLossP95, &p.DecodeTokS, &p.FullDecodeTokS} {
			if math.IsNaN(*f) || math.IsInf(*f, 0) {
				*f = 0
			}
		}
		out.Points[i] = p
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(&out)
}

// Files are the names WriteAll gives its outputs inside the output folder.
var Files = []string{"results.md", "results.csv", "results.json", "policies.csv", "metrics.svg", "metrics.png", "policies.svg", "policies.png"}

// WriteAll writes every output of a sweep into dir: the Markdown table, the
// CSVs, the JSON, the metric plots and the policy plots.
func WriteAll(dir string, r *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, f := range map[string]func(io.Writer, *Result) error{
		"results.md": WriteMarkdown, "results.csv": WriteCSV, "results.json": WriteJSON, "policies.csv": WritePolicyCSV,
	} {
		if err := writeFile(filepath.Join(dir, name), func(w io.Writer) error { return f(w, r) }); err != nil {
			return err
		}
	}
	if err := WritePlots(filepath.Join(dir, "metrics"), r); err != nil {
		return err
	}
	return WritePolicyPlots(filepath.Join(dir, "policies"), r)
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
