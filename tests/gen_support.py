"""Helpers the generator tests share."""
from __future__ import annotations

from generators.base import Sample


def first_sample(gen, seed: int = 7, start: int = 0, tries: int = 6) -> Sample:
    """The first accepted sample of a run of indices (a seed's first index may be a reject)."""
    for item in gen.items(seed, start, start + tries):
        if isinstance(item, Sample):
            return item
    raise AssertionError("no sample in a row of indices")


# -- real-looking LaTeX sources (latex_page --source, formula --source) ------------------------------------------
PAPER_EN = r"""\documentclass[11pt]{article}
\usepackage{amsmath,amssymb,booktabs,graphicx}
\usepackage{hyperref}
\newcommand{\R}{\mathbb{R}}
\newcommand{\norm}[1]{\left\lVert #1 \right\rVert}
\newcommand{\model}{\textsc{Tiler}}
\def\eps{\varepsilon}
\DeclareMathOperator{\Tr}{Tr}
\title{Sparse Tiling for Document Encoders}
\author{A. Author \thanks{Somewhere}}
\begin{document}
\maketitle
\begin{abstract}
We study how a vision encoder reads dense pages. Our method, \model, cuts a page into tiles of $16\times 16$ pixels.
\end{abstract}

\section{Introduction}
\label{sec:intro}
Dense documents strain the token budget of every encoder~\cite{vary2023,nougat}. % a comment that must not show
We bound the error by $\norm{x - \hat{x}} \le \eps$ for all $x \in \R^n$, as shown in Section~\ref{sec:method}.

\input{sections/missing_file}

\section{Method}\label{sec:method}
The loss combines two terms:
\begin{align}
\mathcal{L} &= \mathcal{L}_{\text{rec}} + \lambda \mathcal{L}_{\text{kl}} \label{eq:loss}\\
\mathcal{L}_{\text{kl}} &= \Tr(\Sigma) - \log\det\Sigma
\end{align}
Equation~\eqref{eq:loss} is minimised with Adam.
\begin{equation}
f(x) = \sum_{i=1}^{n} w_i x_i + b
\end{equation}

\begin{figure}[t]
\centering
\includegraphics[width=\linewidth]{figures/missing.pdf}
\caption{A figure whose file is not in the source.}
\end{figure}

\subsection{Results}
\begin{table}[h]
\centering
\begin{tabular}{lcc}
\toprule
Model & Tokens & F1 \\
\midrule
Baseline & 256 & 81.2 \\
\model{} & 64 & 84.7 \\
\bottomrule
\end{tabular}
\caption{Scores on the test set.}
\end{table}
\begin{itemize}
\item Fewer tokens per page.
\item Higher accuracy with $k=4$ tiles.
\end{itemize}
\bibliographystyle{plain}
\bibliography{refs}
\end{document}
"""

PAPER_ZH = r"""\documentclass{article}
\usepackage{xeCJK}
\usepackage{amsmath}
\newcommand{\dd}{\mathrm{d}}
\begin{document}
\section{引言}
文档图像的理解需要细粒度的视觉感知\cite{vary}。我们考虑积分 $\int_0^1 x^2 \dd x = \frac{1}{3}$。
\section{方法}
模型的损失函数为
\begin{equation}
L = -\sum_{t=1}^{T} \log p(y_t \mid y_{<t}, x)
\end{equation}
实验表明该方法有效。
\end{document}
"""


def tex_archive(files: dict[str, str]) -> bytes:
    """An arXiv-style .tar.gz of `files` (path -> text)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in sorted(files.items()):
            data = text.encode("utf-8")
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
