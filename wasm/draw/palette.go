// Package draw renders the client's charts into plain image.RGBA buffers.
//
// It imports nothing from syscall/js, so the same code is unit-tested
// natively, and the browser end-to-end tests can import the palette to look
// for exact pixel colours on the canvases.
package draw

import (
	"fmt"
	"image/color"

	"github.com/fastgen/fastgen/shared"
)

// The Okabe–Ito palette: eight colours that stay distinguishable under the
// common colour-vision deficiencies.
var (
	Black         = color.RGBA{0x00, 0x00, 0x00, 0xff}
	Orange        = color.RGBA{0xE6, 0x9F, 0x00, 0xff}
	SkyBlue       = color.RGBA{0x56, 0xB4, 0xE9, 0xff}
	BluishGreen   = color.RGBA{0x00, 0x9E, 0x73, 0xff}
	Yellow        = color.RGBA{0xF0, 0xE4, 0x42, 0xff}
	Blue          = color.RGBA{0x00, 0x72, 0xB2, 0xff}
	Vermillion    = color.RGBA{0xD5, 0x5E, 0x00, 0xff}
	ReddishPurple = color.RGBA{0xCC, 0x79, 0xA7, 0xff}
)

// Neutrals for backgrounds and "nothing here".
var (
	White     = color.RGBA{0xff, 0xff, 0xff, 0xff}
	Paper     = color.RGBA{0xfa, 0xfa, 0xfa, 0xff}
	LightGray = color.RGBA{0xe3, 0xe3, 0xe3, 0xff}
	MidGray   = color.RGBA{0x9a, 0x9a, 0x9a, 0xff}
	DarkGray  = color.RGBA{0x44, 0x44, 0x44, 0xff}
)

// PolicyColors maps each FastGen policy to its colour, ordered cool to warm
// so that "cheaper" reads as "colder" on the grid.
var PolicyColors = map[string]color.RGBA{
	shared.PolicySpecial:                   Blue,
	shared.PolicySpecialPunct:              SkyBlue,
	shared.PolicySpecialPunctFrequent:      BluishGreen,
	shared.PolicySpecialPunctFrequentLocal: Orange,
	shared.PolicyFull:                      Vermillion,
}

// PolicyColor returns the colour of a policy, mid-gray for an unknown name
// (a newer server may add policies).
func PolicyColor(name string) color.RGBA {
	if c, ok := PolicyColors[name]; ok {
		return c
	}
	return MidGray
}

// Attention-mass category colours (the paper's Fig. 4).
var (
	MassSpecial = ReddishPurple
	MassPunct   = SkyBlue
	MassLocal   = BluishGreen
	MassOther   = MidGray
)

// Token-strip cell colours. Kept cells are coloured by why they are likely
// kept; evicted cells are pale so the kept structure stands out.
var (
	CellEvicted = LightGray
	CellKept    = DarkGray
	CellSpecial = ReddishPurple
	CellPunct   = SkyBlue
	CellWindow  = BluishGreen
	CellFuture  = White
	// Highlight outlines heads whose policy changed after a threshold move
	// and the selected head; black is distinct from every fill.
	Highlight = Black
)

// Stream colours on the compare charts.
var (
	StreamFastGen  = Blue
	StreamBaseline = Vermillion
	KLColor        = ReddishPurple
)

// Hex renders a colour as #rrggbb for CSS and the legend.
func Hex(c color.RGBA) string {
	return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B)
}
