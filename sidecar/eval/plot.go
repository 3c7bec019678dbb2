package eval

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/fastgen/fastgen/sidecar/fastgen"
)

// plotted are the metrics drawn against the pruned ratio (the paper's Fig. 2
// and Fig. 5 put quality against the compression each method reaches).
var plotted = []string{"dppl_pct", "kl", "top1", "attn_loss", "attn_loss_p95", "first_divergence", "exact_match", "rouge_l", "kv_bytes_ratio"}

// WritePlots writes base.svg and base.png: one panel per metric against the
// pruned ratio, one line per method.
func WritePlots(base string, r *Result) error {
	var methods []string
	seen := map[string]bool{}
	for _, p := range r.Points {
		if !seen[p.Method] {
			seen[p.Method] = true
			methods = append(methods, p.Method)
		}
	}
	const cols = 3
	rows := (len(plotted) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for mi, name := range plotted {
		var col column
		for _, c := range columns {
			if c.name == name {
				col = c
			}
		}
		pl := plot.New()
		pl.Title.Text = col.head
		pl.X.Label.Text = "pruned ratio"
		for i, m := range methods {
			var xy plotter.XYs
			for _, p := range r.Points {
				if v, ok := col.get(p); ok && p.Method == m && !math.IsNaN(v) {
					xy = append(xy, plotter.XY{X: p.PrunedRatio, Y: v})
				}
			}
			if len(xy) == 0 {
				continue
			}
			sortXY(xy)
			line, pts, err := plotter.NewLinePoints(xy)
			if err != nil {
				return err
			}
			line.Color = plotutil.Color(i)
			line.Width = vg.Points(1.2)
			if m == MethodFastGen {
				line.Width = vg.Points(2.4) // the method under study stands out
			}
			pts.Color, pts.Shape = plotutil.Color(i), plotutil.Shape(i)
			pl.Add(line, pts)
			if mi == 0 {
				pl.Legend.Add(m, line, pts)
			}
		}
		pl.Legend.Top, pl.Legend.Left = true, true
		pl.Add(plotter.NewGrid())
		grid[mi/cols][mi%cols] = pl
	}
	for r := range grid {
		for c := range grid[r] {
			if grid[r][c] == nil {
				grid[r][c] = plot.New()
				grid[r][c].HideAxes()
			}
		}
	}
	return saveGrid(base, grid, vg.Length(cols)*4*vg.Inch, vg.Length(rows)*3.2*vg.Inch)
}

// WritePolicyPlots writes base.svg and base.png: per threshold, the share of
// FastGen's heads on each policy per layer as stacked bars (the paper's Fig. 3).
func WritePolicyPlots(base string, r *Result) error {
	var ths []float64
	byT := map[float64][]PolicyShare{}
	for _, ps := range r.Policies {
		if _, ok := byT[ps.Threshold]; !ok {
			ths = append(ths, ps.Threshold)
		}
		byT[ps.Threshold] = append(byT[ps.Threshold], ps)
	}
	if len(ths) == 0 {
		return fmt.Errorf("no policy statistics to plot")
	}
	cols := min(4, len(ths))
	rows := (len(ths) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	colors := []color.Color{
		color.RGBA{0x44, 0x77, 0xaa, 0xff}, color.RGBA{0x66, 0xcc, 0xee, 0xff}, color.RGBA{0x22, 0x88, 0x33, 0xff},
		color.RGBA{0xcc, 0xbb, 0x44, 0xff}, color.RGBA{0xee, 0x66, 0x77, 0xff},
	}
	for ti, t := range ths {
		layers := byT[t]
		pl := plot.New()
		pl.Title.Text = fmt.Sprintf("T = %.2f", t)
		pl.X.Label.Text = "layer"
		pl.Y.Label.Text = "share of heads"
		pl.Y.Min, pl.Y.Max = 0, 1
		var below *plotter.BarChart
		for pi, name := range fastgen.PolicyNames {
			vals := make(plotter.Values, len(layers))
			for l, ps := range layers {
				vals[l] = ps.Share[pi]
			}
			bar, err := plotter.NewBarChart(vals, vg.Points(14))
			if err != nil {
				return err
			}
			bar.Color = colors[pi%len(colors)]
			bar.LineStyle.Width = 0
			if below != nil {
				bar.StackOn(below)
			}
			below = bar
			pl.Add(bar)
			if ti == 0 {
				pl.Legend.Add(name, bar)
			}
		}
		pl.Legend.Top = true
		names := make([]string, len(layers))
		for l := range names {
			names[l] = fmt.Sprint(l)
		}
		pl.NominalX(names...)
		grid[ti/cols][ti%cols] = pl
	}
	for r := range grid {
		for c := range grid[r] {
			if grid[r][c] == nil {
				grid[r][c] = plot.New()
				grid[r][c].HideAxes()
			}
		}
	}
	return saveGrid(base, grid, vg.Length(cols)*3.5*vg.Inch, vg.Length(rows)*3.5*vg.Inch)
}

func sortXY(xy plotter.XYs) {
	for i := 1; i < len(xy); i++ {
		for j := i; j > 0 && xy[j].X < xy[j-1].X; j-- {
			xy[j], xy[j-1] = xy[j-1], xy[j]
		}
	}
}

// saveGrid draws a grid of plots once as SVG and once as PNG.
func saveGrid(base string, grid [][]*plot.Plot, w, h vg.Length) error {
	tiles := draw.Tiles{Rows: len(grid), Cols: len(grid[0]), PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		return err
	}
	svg := vgsvg.New(w, h)
	drawGrid(draw.New(svg), grid, tiles)
	if err := writeTo(base+".svg", svg); err != nil {
		return err
	}
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(110))
	drawGrid(draw.New(img), grid, tiles)
	return writeTo(base+".png", vgimg.PngCanvas{Canvas: img})
}

func drawGrid(dc draw.Canvas, grid [][]*plot.Plot, tiles draw.Tiles) {
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	cs := plot.Align(grid, tiles, dc)
	for i := range grid {
		for j := range grid[i] {
			grid[i][j].Draw(cs[i][j])
		}
	}
}

func writeTo(path string, c interface {
	WriteTo(w io.Writer) (int64, error)
}) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
