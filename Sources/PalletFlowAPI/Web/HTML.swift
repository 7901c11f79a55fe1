import Foundation
import PalletFlowCore

/// Text made safe for HTML content and attribute values.
func esc(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for character in text {
        switch character {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default: out.append(character)
        }
    }
    return out
}

/// What every page needs to draw its frame: the signed-in member, the language, the form
/// token, and where it is.
struct PageContext: Sendable {
    var caller: Caller
    var memberName: String
    var strings: Strings
    var csrf: String
    var path: String
    var ecosystemName: String
    var currency: String

    var t: Strings { strings }
    var language: Language { strings.language }

    /// A hidden field with the session's form token: every POST form carries it.
    var csrfField: String { "<input type=\"hidden\" name=\"_csrf\" value=\"\(esc(csrf))\">" }

    func money(_ minor: Int64?) -> String {
        guard let minor else { return "" }
        let whole = abs(minor) / 100
        var digits = String(whole)
        var grouped = ""
        while digits.count > 3 {
            grouped = (language == .fr ? "\u{202F}" : ",") + String(digits.suffix(3)) + grouped
            digits = String(digits.dropLast(3))
        }
        let cents = String(format: "%02d", Int(abs(minor) % 100))
        return (minor < 0 ? "-" : "") + digits + grouped + (language == .fr ? "," : ".") + cents + "\u{00A0}" + currency
    }

    func percent(_ value: Double?) -> String {
        guard let value else { return "n/a" }
        let text = String(format: "%.1f", value * 100)
        return (language == .fr ? text.replacingOccurrences(of: ".", with: ",") : text) + " %"
    }
}

enum Layout {
    static let css = """
        :root{--ink:#1d2733;--muted:#52606d;--line:#c9d3dd;--accent:#1f6f8b;--accent2:#e07a1f;--bg:#f7f9fb;--ok:#1b7f3b;--bad:#b42318}
        *{box-sizing:border-box}
        body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg);line-height:1.5;font-size:16px}
        a{color:var(--accent)}a:focus,button:focus,input:focus,select:focus,textarea:focus{outline:3px solid #f2b84b;outline-offset:1px}
        .skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;padding:.5rem;z-index:9}
        header.top{background:#12354a;color:#fff;padding:.6rem 1.2rem;display:flex;flex-wrap:wrap;gap:.6rem 1.5rem;align-items:center}
        header.top a{color:#fff;text-decoration:none}header.top a[aria-current=page]{border-bottom:3px solid var(--accent2)}
        header.top .brand{font-weight:700;font-size:1.1rem;margin-right:1rem}
        header.top nav ul{list-style:none;display:flex;flex-wrap:wrap;gap:.4rem 1.1rem;margin:0;padding:0}
        header.top .who{margin-left:auto;font-size:.9rem;display:flex;gap:.8rem;align-items:center;flex-wrap:wrap}
        header.top button{background:transparent;color:#fff;border:1px solid #9fb3c2;border-radius:4px;padding:.15rem .6rem;cursor:pointer}
        main{max-width:72rem;margin:0 auto;padding:1.2rem}
        h1{font-size:1.6rem;margin:.4rem 0 .2rem}h2{font-size:1.2rem;margin-top:1.8rem;border-bottom:2px solid var(--accent);padding-bottom:.2rem}
        h3{font-size:1.05rem;margin:1.2rem 0 .3rem}.meta{color:var(--muted);font-size:.92rem}
        .cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(11rem,1fr));gap:.8rem;margin:1rem 0}
        .card{background:#fff;border:1px solid var(--line);border-radius:6px;padding:.7rem .9rem}.card .k{color:var(--muted);font-size:.85rem}.card .v{font-size:1.3rem;font-weight:650;overflow-wrap:anywhere}
        .grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(22rem,1fr));gap:1rem}
        table{border-collapse:collapse;width:100%;margin:.4rem 0 1rem;background:#fff}
        caption{text-align:left;font-weight:600;padding:.3rem 0}
        th,td{border:1px solid var(--line);padding:.3rem .5rem;text-align:left;font-size:.92rem;vertical-align:top}
        th{background:#eef3f7}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
        .scroll{overflow-x:auto}
        figure{margin:.4rem 0;background:#fff;border:1px solid var(--line);border-radius:6px;padding:.5rem}
        figure svg{max-width:100%;height:auto}figcaption{font-size:.88rem;color:var(--muted)}
        form.inline{display:inline}label{display:block;font-weight:600;margin:.6rem 0 .2rem}
        input[type=text],input[type=password],input[type=date],select,textarea{font:inherit;padding:.35rem .5rem;border:1px solid #8a99a8;border-radius:4px;width:100%;max-width:32rem;background:#fff}
        textarea{min-height:5rem}
        button,.button{font:inherit;background:var(--accent);color:#fff;border:0;border-radius:4px;padding:.4rem .9rem;cursor:pointer;margin-top:.5rem;text-decoration:none;display:inline-block}
        .filters{display:flex;flex-wrap:wrap;gap:.6rem 1rem;align-items:flex-end}.filters label{margin:0}.filters>div{min-width:10rem}
        .met{color:var(--ok);font-weight:600}.not_met{color:var(--bad);font-weight:600}.flash{background:#e6f4ea;border:1px solid #9bd1ab;padding:.5rem .8rem;border-radius:4px}
        .error{background:#fdecea;border:1px solid #f4b4ad;padding:.5rem .8rem;border-radius:4px}
        .token{font-family:ui-monospace,monospace;word-break:break-all;background:#fff;border:1px dashed var(--accent);padding:.5rem}
        @media (max-width:820px){main{padding:.8rem}header.top .who{margin-left:0}h1{font-size:1.35rem}}
        @media print{header.top,.noprint{display:none}body{background:#fff}main{max-width:none;padding:0}}
        """

    /// The frame of every signed-in page: skip link, navigation by role, language switch,
    /// sign-out form.
    static func page(_ context: PageContext, title: String, body: String) -> String {
        let t = context.t
        let role = context.caller.role
        var links: [(String, String)] = []
        if role.readsWholeEcosystem { links.append(("/app", t("Overview"))) }
        if role != .coordinator { links.append(("/app/me", t("My account"))) }
        links += [("/app/sessions", t("Mediation sessions")), ("/app/charters", t("Charters")), ("/app/kits", t("Kits"))]
        if role.readsWholeEcosystem { links.append(("/app/indicators", t("Indicators"))) }
        let nav = links.map { path, label in
            let current = context.path == path || (path != "/app" && context.path.hasPrefix(path + "/"))
            return "<li><a href=\"\(path)\"\(current ? " aria-current=\"page\"" : "")>\(esc(label))</a></li>"
        }.joined()
        let other: Language = context.language == .en ? .fr : .en
        return """
            <!doctype html>
            <html lang="\(context.language.rawValue)"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
            <title>\(esc(title)) · PalletFlow</title><style>\(css)</style></head><body>
            <a class="skip" href="#main">Skip to content</a>
            <header class="top"><span class="brand">PalletFlow</span>
            <nav aria-label="\(esc(t("PalletFlow dashboard")))"><ul>\(nav)</ul></nav>
            <div class="who"><span>\(esc(t("Signed in as"))) <strong>\(esc(context.memberName))</strong> (\(esc(context.caller.role.rawValue)))</span>
            <a href="/app/language/\(other.rawValue)?back=\(esc(context.path.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "/-_"))) ?? "/app"))" lang="\(other.rawValue)" hreflang="\(other.rawValue)">\(other.name)</a>
            <form class="inline" method="post" action="/app/sign-out">\(context.csrfField)<button type="submit">\(esc(t("Sign out")))</button></form>
            </div></header>
            <main id="main"><p class="meta">\(esc(context.ecosystemName))</p>\(body)</main></body></html>
            """
    }

    /// A page outside a session (sign-in, errors before sign-in).
    static func bare(language: Language, title: String, body: String) -> String {
        """
        <!doctype html>
        <html lang="\(language.rawValue)"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
        <title>\(esc(title)) · PalletFlow</title><style>\(css)</style></head><body>
        <header class="top"><span class="brand">PalletFlow</span></header>
        <main id="main">\(body)</main></body></html>
        """
    }

    /// A table with a caption, header row and rows of already-escaped cells. Cells that
    /// start with `n:` are numbers (right-aligned).
    static func table(caption: String?, headers: [String], rows: [[String]], id: String? = nil) -> String {
        var html = "<div class=\"scroll\"><table\(id.map { " id=\"\(esc($0))\"" } ?? "")>"
        if let caption { html += "<caption>\(esc(caption))</caption>" }
        html += "<thead><tr>" + headers.map { "<th scope=\"col\">\(esc($0))</th>" }.joined() + "</tr></thead><tbody>"
        for row in rows {
            html += "<tr>" + row.map { cell in
                cell.hasPrefix("n:") ? "<td class=\"n\">\(cell.dropFirst(2))</td>" : "<td>\(cell)</td>"
            }.joined() + "</tr>"
        }
        return html + "</tbody></table></div>"
    }
}

/// Server-drawn SVG charts, each with axis labels and its data table below it.
enum WebChart {
    static func line(title: String, unit: String, series: [(name: String, points: [(String, Double)])], dataLabel: String) -> String {
        let labels = series.first?.points.map(\.0) ?? []
        guard !labels.isEmpty else { return "<p class=\"meta\">\(esc(title)): –</p>" }
        let width = 640.0, height = 220.0, left = 52.0, bottom = 34.0, top = 12.0, right = 28.0
        let maximum = max(series.flatMap { $0.points.map(\.1) }.max() ?? 1, 0.5)
        let (niceMax, tickStep) = axis(maximum)
        let step = labels.count > 1 ? (width - left - right) / Double(labels.count - 1) : 0
        let colors = ["#1f6f8b", "#e07a1f", "#6a4c93", "#1b7f3b"]
        func y(_ value: Double) -> Double { height - bottom - value / niceMax * (height - bottom - top) }
        var svg = "<figure><svg role=\"img\" aria-label=\"\(esc(title))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\">"
        svg += gridlines(top: niceMax, step: tickStep, left: left, right: width - 8, y: y)
        svg += "<line x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width - 8)\" y2=\"\(height - bottom)\" stroke=\"#52606d\"/>"
        svg += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(height - bottom)\" stroke=\"#52606d\"/>"
        svg += unitLabel(unit, top: top)
        let every = max(1, Int((Double(labels.count) / 7).rounded(.up)))
        // Every few labels, and the last one, never two on top of each other.
        for (index, label) in labels.enumerated()
        where index == labels.count - 1 || (index % every == 0 && labels.count - 1 - index >= every) {
            let anchor = index == labels.count - 1 && labels.count > 1 ? "end" : index == 0 ? "start" : "middle"
            svg += "<text x=\"\(f(left + Double(index) * step))\" y=\"\(height - 12)\" font-size=\"11\" text-anchor=\"\(anchor)\">\(esc(label))</text>"
        }
        for (number, serie) in series.enumerated() {
            let color = colors[number % colors.count]
            let points = serie.points.enumerated().map { "\(f(left + Double($0.offset) * step)),\(f(y($0.element.1)))" }
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2.2\" points=\"\(points.joined(separator: " "))\"/>"
            for (index, point) in serie.points.enumerated() {
                svg += "<circle cx=\"\(f(left + Double(index) * step))\" cy=\"\(f(y(point.1)))\" r=\"2.6\" fill=\"\(color)\"><title>\(esc(serie.name)) \(esc(point.0)): \(f1(point.1))</title></circle>"
            }
        }
        svg += "</svg><figcaption>\(esc(title))"
        if series.count > 1 {
            svg += " — " + series.enumerated().map { "<span style=\"color:\(colors[$0.offset % colors.count])\">■</span> \(esc($0.element.name))" }.joined(separator: " ")
        }
        svg += "</figcaption>"
        svg += "<details><summary>\(esc(dataLabel))</summary>"
        svg += Layout.table(caption: nil, headers: [""] + series.map(\.name),
                            rows: labels.enumerated().map { index, label in
                                [esc(label)] + series.map { "n:" + f1($0.points[index].1) }
                            })
        svg += "</details></figure>"
        return svg
    }

    static func bars(title: String, unit: String, bars: [(String, Double)], dataLabel: String) -> String {
        let width = 640.0, height = 200.0, left = 52.0, bottom = 34.0, top = 12.0
        let maximum = max(bars.map(\.1).max() ?? 1, 1)
        let (niceMax, tickStep) = axis(maximum)
        let slot = (width - left - 8) / Double(max(bars.count, 1))
        func y(_ value: Double) -> Double { height - bottom - value / niceMax * (height - bottom - top) }
        var svg = "<figure><svg role=\"img\" aria-label=\"\(esc(title))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\">"
        svg += gridlines(top: niceMax, step: tickStep, left: left, right: width - 8, y: y)
        svg += unitLabel(unit, top: top)
        for (index, bar) in bars.enumerated() {
            let x = left + Double(index) * slot + slot * 0.18
            svg += "<rect x=\"\(f(x))\" y=\"\(f(y(bar.1)))\" width=\"\(f(slot * 0.64))\" height=\"\(f(y(0) - y(bar.1)))\" fill=\"#e07a1f\"><title>\(esc(bar.0)): \(f0(bar.1))</title></rect>"
            svg += "<text x=\"\(f(x + slot * 0.32))\" y=\"\(f(y(bar.1) - 3))\" font-size=\"11\" text-anchor=\"middle\">\(f0(bar.1))</text>"
            // Long labels go on two lines rather than over their neighbours.
            let words = bar.0.split(separator: " ")
            if words.count > 1 {
                svg += "<text x=\"\(f(x + slot * 0.32))\" y=\"\(height - 20)\" font-size=\"11\" text-anchor=\"middle\">"
                    + "<tspan x=\"\(f(x + slot * 0.32))\">\(esc(String(words[0])))</tspan>"
                    + "<tspan x=\"\(f(x + slot * 0.32))\" dy=\"12\">\(esc(words.dropFirst().joined(separator: " ")))</tspan></text>"
            } else {
                svg += "<text x=\"\(f(x + slot * 0.32))\" y=\"\(height - 12)\" font-size=\"11\" text-anchor=\"middle\">\(esc(bar.0))</text>"
            }
        }
        svg += "<line x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width - 8)\" y2=\"\(height - bottom)\" stroke=\"#52606d\"/>"
        svg += "</svg><figcaption>\(esc(title))</figcaption><details><summary>\(esc(dataLabel))</summary>"
        svg += Layout.table(caption: nil, headers: ["", unit], rows: bars.map { [esc($0.0), "n:" + f0($0.1)] })
        return svg + "</details></figure>"
    }

    /// Horizontal grid lines with their value at the left, one per tick.
    static func gridlines(top: Double, step: Double, left: Double, right: Double, y: (Double) -> Double) -> String {
        var svg = ""
        for index in 0...Int((top / step).rounded()) {
            let value = step * Double(index)
            svg += "<line x1=\"\(left)\" x2=\"\(right)\" y1=\"\(f(y(value)))\" y2=\"\(f(y(value)))\" stroke=\"#e3e8ee\"/>"
            svg += "<text x=\"\(left - 6)\" y=\"\(f(y(value) + 4))\" font-size=\"11\" text-anchor=\"end\">\(tick(value, step: step))</text>"
        }
        return svg
    }

    /// The unit of the vertical axis, written up along it.
    static func unitLabel(_ unit: String, top: Double) -> String {
        "<text x=\"12\" y=\"\(top + 4)\" font-size=\"11\" transform=\"rotate(-90 12 \(top + 4))\" text-anchor=\"end\">\(esc(unit))</text>"
    }

    /// A round axis maximum and step (1, 2 or 5 times a power of ten) for four or five ticks.
    static func axis(_ maximum: Double) -> (top: Double, step: Double) {
        let raw = max(maximum, 1e-9) / 4
        let power = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * power }.first { $0 >= raw } ?? 10 * power
        return (max(step, (maximum / step).rounded(.up) * step), step)
    }

    static func tick(_ value: Double, step: Double) -> String {
        step >= 1 ? String(format: "%.0f", value) : String(format: step >= 0.1 ? "%.1f" : "%.2f", value)
    }

    static func f(_ value: Double) -> String { String(format: "%.1f", value) }
    static func f0(_ value: Double) -> String { String(format: "%.0f", value) }
    static func f1(_ value: Double) -> String { String(format: "%.1f", value) }
}
