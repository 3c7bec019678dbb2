package app

import (
	"html"
	"math"
	"strconv"
	"strings"

	"github.com/fastgen/fastgen/shared"
)

// FrameID is the request id a frame belongs to ("" for hello, pong and
// connection-level errors).
func FrameID(f shared.Frame) string {
	switch f := f.(type) {
	case *shared.Progress:
		return f.ID
	case *shared.Profile:
		return f.ID
	case *shared.Token:
		return f.ID
	case *shared.Occupancy:
		return f.ID
	case *shared.Stats:
		return f.ID
	case *shared.Done:
		return f.ID
	case *shared.Error:
		return f.ID
	}
	return ""
}

// TokenHTML renders a stream as focusable spans for the compare columns;
// tokens[0] is step start, so a streaming view can append only new tokens.
// Each span carries its column and step so one delegated listener can show
// the alternatives; differing tokens (ops, indexed like tokens) and the
// first divergence (a step) get classes.
func TokenHTML(tokens []shared.Token, start int, ops []DiffOp, firstDiv int, col string) string {
	var b strings.Builder
	for j, t := range tokens {
		i := start + j
		b.WriteString(`<span class="tok`)
		if j < len(ops) && ops[j] == Changed {
			b.WriteString(" diff")
		}
		if i == firstDiv {
			b.WriteString(" first-div")
		}
		b.WriteString(`" tabindex="0" data-col="`)
		b.WriteString(col)
		b.WriteString(`" data-i="`)
		b.WriteString(strconv.Itoa(i))
		b.WriteString(`">`)
		b.WriteString(html.EscapeString(t.Text))
		b.WriteString(`</span>`)
	}
	return b.String()
}

// AlternativesHTML is the tooltip for one token: the chosen token and its
// top-k alternatives with probabilities and proportional bars.
func AlternativesHTML(t shared.Token) string {
	var b strings.Builder
	b.WriteString(`<div><strong>Step ` + strconv.Itoa(t.Index) + `</strong>: chose ` + Quote(t.Text) +
		` (p = ` + Num(math.Exp(t.Logprob), 3) + `)</div>`)
	if len(t.Top) == 0 {
		b.WriteString(`<div>No alternatives were requested.</div>`)
		return b.String()
	}
	b.WriteString(`<table><tbody>`)
	for _, a := range t.Top {
		p := math.Exp(a.Logprob)
		w := int(math.Round(p * 80))
		b.WriteString(`<tr><td>` + Quote(a.Text) + `</td><td>` + Num(p, 3) +
			`</td><td><span class="bar" style="width:` + strconv.Itoa(w) + `px"></span></td></tr>`)
	}
	b.WriteString(`</tbody></table>`)
	return b.String()
}

// QuoteText shows a token piece visibly: quoted, with newlines and tabs
// made explicit.
func QuoteText(s string) string {
	return `"` + strings.NewReplacer("\n", `\n`, "\t", `\t`).Replace(s) + `"`
}

// Quote is QuoteText, HTML-escaped.
func Quote(s string) string { return html.EscapeString(QuoteText(s)) }

// TR renders one table row, escaping every cell.
func TR(cells ...string) string {
	var b strings.Builder
	b.WriteString("<tr>")
	for _, c := range cells {
		b.WriteString("<td>")
		b.WriteString(html.EscapeString(c))
		b.WriteString("</td>")
	}
	b.WriteString("</tr>")
	return b.String()
}

// PolicyShort abbreviates a policy for the dense grid table.
func PolicyShort(p int) string {
	if p < 0 || p >= len(shared.Policies) {
		return "?"
	}
	return [...]string{"S", "S+P", "S+P+F", "S+P+F+L", "Full"}[p]
}
