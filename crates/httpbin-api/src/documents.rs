//! The fixed documents. httpbin's own (a chapter of Moby-Dick, a sample
//! slideshow, ASCII art) are not ours to copy: these are documents of our
//! own with the same content type and structure. `robots.txt` is httpbin's,
//! byte for byte: two lines of protocol, not prose.

/// `/robots.txt`.
pub const ROBOTS: &str = "User-agent: *\nDisallow: /deny\n";

/// `/deny`: what robots.txt forbids.
pub const DENY: &str = "
      .--------------------.
      |  NO ROBOTS ALLOWED |
      '--------------------'
             \\
              [o_o]
              /|_|\\
               / \\
     YOU SHOULDN'T BE HERE
";

/// `/status/418`.
pub const TEAPOT: &str = "
    -=[ teapot ]=-

         (  )
        .-||-.___
       |  ||  |__)
        '-..-'
    short and stout
";

/// `/html`: an HTML page with a heading and text.
pub const HTML_PAGE: &str = "<!DOCTYPE html>
<html>
  <head>
  </head>
  <body>
      <h1>Scaling Notes</h1>

      <div>
        <p>
          A workload that does not scale is found out by load, not by reading. Offer more requests than one
          replica can answer, watch the autoscaler add replicas, and measure how long the queue takes to drain.
          Then take the load away and watch the replicas go, one by one, as the stabilisation window allows.
        </p>
      </div>
  </body>
</html>";

/// `/xml`: a slideshow, as httpbin's sample document is shaped.
pub const XML: &str = "<?xml version='1.0' encoding='us-ascii'?>

<!--  A SAMPLE set of slides  -->

<slideshow
    title=\"Sample Slide Show\"
    date=\"Date of publication\"
    author=\"scalelab\"
    >

    <!-- TITLE SLIDE -->
    <slide type=\"all\">
      <title>Does it scale?</title>
    </slide>

    <!-- OVERVIEW -->
    <slide type=\"all\">
        <title>Overview</title>
        <item>Why <em>load</em> tells</item>
        <item/>
        <item>Who <em>watches</em> the autoscaler</item>
    </slide>

</slideshow>";

/// `/encoding/utf8`: text in many scripts.
pub const UTF8: &str = "<h1>Unicode Demo</h1>

<p>Text in several scripts, for checking that UTF-8 arrives intact:</p>

<pre>
  Mathematics:  ∮ E⋅da = Q,  n → ∞, ∑ f(i) = ∏ g(i), ∀x∈ℝ: ⌈x⌉ = −⌊−x⌋
  Greek:        Σὲ γνωρίζω ἀπὸ τὴν κόψη
  Russian:      Зарегистрируйтесь сейчас
  Georgian:     გთხოვთ ახლავე გაიაროთ რეგისტრაცია
  Thai:         สิบสองกษัตริย์ก่อนหน้าแลถัดไป
  Amharic:      ሰማይ አይታረስ ንጉሥ አይከሰስ።
  Runes:        ᚻᛖ ᚳᚹᚫᚦ ᚦᚫᛏ ᚻᛖ ᛒᚢᛞᛖ
  Braille:      ⡌⠁⠧⠑ ⠼⠁⠒  ⡍⠜⠇⠑⠹⠰⠎ ⡣⠕⠌
  Box drawing:  ╔══╦══╗  ┌──┬──┐
                ║  ║  ║  │  │  │
                ╚══╩══╝  └──┴──┘
</pre>
";

/// `/`: what this server is.
pub const INDEX: &str = "<!DOCTYPE html>
<html>
<head><title>httpbin on scalelab</title></head>
<body>
<h1>httpbin on scalelab</h1>
<p>httpbin 0.9.2's HTTP request and response service, as a WebAssembly guest. Try
<a href=\"/get\">/get</a>, <a href=\"/uuid\">/uuid</a>, <a href=\"/headers\">/headers</a>,
<a href=\"/status/418\">/status/418</a> or <a href=\"/stream/3\">/stream/3</a>.</p>
</body>
</html>
";
